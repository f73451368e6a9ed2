"""docs/cost.md's `cellscale plan` figures are what the command prints: each test finds a command the page quotes and
the figures it gives for it, runs the command from the checkout as the page's reader would, and compares. The page
is the figures' one source: a model change that moves one fails here until the page says the new figure. Left out:
the 10^6 staged fields' infeasible answer (70 h staged, 4.57 h direct), which takes several seconds."""

from __future__ import annotations

import re
import shlex

import pytest
from support import ROOT

from cellscale.cli import main

PAGE = " ".join((ROOT / "docs/cost.md").read_text().split())
FIGURE = r"\d[\d,]*(?:\.\d+)?"
# what `cellscale plan` prints, as named figures (the names the page's patterns below use)
PRINTED = [rf"predicted: (?P<hours>{FIGURE}) h, \$(?P<cost>{FIGURE})",
           r"pool gpu: (?P<gpus>\d+) x", r"pool spot-cpu: (?P<cpus>\d+) x",
           r"shard (?P<shard>\d+) Mpx: (?P<jobs>\d+) segment_batch jobs",
           rf"simulated \(SimPy, {FIGURE} s\): (?P<sim_hours>{FIGURE}) h, \$(?P<sim_cost>{FIGURE})",
           rf"planned again: (?P<first_gpus>\d+) x \S+ spot, (?:(?P<first_cpus>\d+) x \S+ spot, )?(?P<first_shard>\d+) "
           rf"Mpx shards was predicted (?P<first_hours>{FIGURE}) h, \$(?P<first_cost>{FIGURE}) \(within [^)]*\) and "
           rf"simulated (?P<first_sim_hours>{FIGURE}) h, \$(?P<first_sim_cost>{FIGURE})",
           rf"from (?P<launcher>{FIGURE}) h to (?P<direct_launcher>{FIGURE}) h of this run's"]


def on_page(pattern: str) -> dict[str, str]:
    """The named figures of the one place on docs/cost.md that ``pattern`` matches (whitespace as one space)."""
    found = re.findall(pattern, PAGE)
    assert len(found) == 1, f"docs/cost.md has {len(found)} passages like {pattern!r}, the test reads one"
    return re.search(pattern, PAGE).groupdict()


def run_plan(capsys, monkeypatch, command: str) -> tuple[int, str]:
    """`cellscale plan COMMAND` (the page's command, with or without its `cellscale plan`) run from the checkout
    (its config/config.yaml gives the formats and augment): the exit status and what it printed."""
    monkeypatch.chdir(ROOT)
    code = main(["plan", *shlex.split(command.removeprefix("cellscale plan "))])
    out = capsys.readouterr()
    return code, out.out + out.err


def printed(text: str, names) -> dict[str, str]:
    """The figures ``names`` as `cellscale plan` printed them in ``text``."""
    figures = {}
    for pattern in PRINTED:
        if m := re.search(pattern, " ".join(text.split())):
            figures.update(m.groupdict())
    return {name: figures.get(name) for name in names}


def test_the_one_pass_spot_l4_plan_costs_what_the_page_says(capsys, monkeypatch):
    page = on_page(rf"with one pass: \$(?P<cost>{FIGURE}) instead of \$(?P<default_cost>{FIGURE}) "
                   r"\(`(?P<command>cellscale plan [^`]+)`\)")
    command = page.pop("command")
    assert "--augment none" in command
    default_cost = page.pop("default_cost")
    code, text = run_plan(capsys, monkeypatch, command)
    assert code == 0 and printed(text, page) == page, text
    # "instead of": the same command at the config's augment (rot180, two passes)
    code, text = run_plan(capsys, monkeypatch, command.replace("--augment none", ""))
    assert code == 0 and printed(text, ["cost"]) == {"cost": default_cost}, text


def test_the_infeasible_l4_example_prints_the_message_the_page_quotes(capsys, monkeypatch):
    page = on_page(r"e\.g\. for `(?P<command>--images [^`]+)`: `(?P<message>deadline [^`]+)`")
    code, text = run_plan(capsys, monkeypatch, page["command"])
    said = [" ".join(line.split()) for line in text.splitlines() if line.startswith("cellscale plan: infeasible: ")]
    assert code == 2 and said == [f"cellscale plan: infeasible: {page['message']}"], text


def test_the_infeasible_example_beyond_the_quota_names_the_counts_the_page_quotes(capsys, monkeypatch):
    page = on_page(r"`(?P<command>--images 1000000 --deadline 2 [^`]+)` needs `(?P<message>about [^`]+)`")
    code, text = run_plan(capsys, monkeypatch, page["command"])
    # the page leaves parts of the message out ("..."): the rest, in its order
    quoted = ".*?".join(re.escape(part.strip()) for part in page["message"].split("..."))
    said = [" ".join(line.split()) for line in text.splitlines() if line.startswith("cellscale plan: infeasible: ")]
    assert code == 2 and len(said) == 1 and re.search(quoted, said[0]), text


def test_staged_fields_plan_and_their_direct_alternative_take_what_the_page_says(capsys, monkeypatch):
    page = on_page(rf"`(?P<command>cellscale plan --images 20000 [^`]+)` plans (?P<hours>{FIGURE}) h and notes that "
                   rf"`--read-fields direct` would cut the launcher's requests from (?P<launcher>{FIGURE}) h to "
                   rf"(?P<direct_launcher>{FIGURE}) h \(planned that way: (?P<direct_hours>{FIGURE}) h\)")
    waves = on_page(rf"`{re.escape(page['command'])}` plans (?P<cpus>\d+) nodes and (?P<shard>\d+)-Mpx shards, "
                    rf"(?P<jobs>\d+) jobs in one wave \((?P<hours>{FIGURE}) h\)")
    command, direct_hours = page.pop("command"), page.pop("direct_hours")
    code, text = run_plan(capsys, monkeypatch, command)
    assert code == 0 and printed(text, page) == page and printed(text, waves) == waves, text
    code, text = run_plan(capsys, monkeypatch, f"{command} --read-fields direct")
    assert code == 0 and printed(text, ["hours"]) == {"hours": direct_hours}, text


@pytest.mark.parametrize("passage", [
    # the check by simulation: the prediction's first choice misses the deadline, the second meets it
    rf"Example: `(?P<command>cellscale plan [^`]+)` \([^)]*\)\. - The prediction alone chooses (?P<first_gpus>\d+) "
    rf"spot L4 \(\d+ jobs of (?P<first_shard>\d+) Mpx[^)]*\): predicted (?P<first_hours>{FIGURE}) h, "
    rf"\$(?P<first_cost>{FIGURE}), simulated \*\*(?P<first_sim_hours>{FIGURE}) h\*\*, \$(?P<first_sim_cost>{FIGURE}), "
    rf"past the deadline\. - Checked, it plans again within {FIGURE} h and chooses (?P<gpus>\d+) L4: predicted "
    rf"(?P<hours>{FIGURE}) h, \$(?P<cost>{FIGURE}), simulated \*\*(?P<sim_hours>{FIGURE}) h\*\*, "
    rf"\$(?P<sim_cost>{FIGURE}), within the deadline",
    # the same in budget mode
    rf"In budget mode, `(?P<command>--images [^`]+)` first chooses (?P<first_gpus>\d+) L4 with (?P<first_cpus>\d+) "
    rf"n1-standard-4 for the exports \((?P<first_shard>\d+)-Mpx shards\), predicted \$(?P<first_cost>{FIGURE}) and "
    rf"simulated \$(?P<first_sim_cost>{FIGURE})\. Checked, it takes (?P<gpus>\d+) L4 with (?P<cpus>\d+) "
    rf"n1-standard-4, predicted (?P<hours>{FIGURE}) h and \$(?P<cost>{FIGURE}), simulated (?P<sim_hours>{FIGURE}) h "
    rf"and \$(?P<sim_cost>{FIGURE})"], ids=["deadline", "budget"])
def test_a_checked_plan_and_the_configuration_it_turned_down_are_what_the_page_says(capsys, monkeypatch, passage):
    page = on_page(passage)
    code, text = run_plan(capsys, monkeypatch, page.pop("command"))
    assert code == 0 and printed(text, page) == page, text
