"""Per-rule sizes from benchmark files (`cellscale size`, `cellscale gke size`) on the demo's real measurements."""

from __future__ import annotations

import csv
import math
import re
import shutil

import pytest
import yaml
from support import ROOT

from cellscale import cli
from cellscale.deploy import sizing

DEMO_BENCHMARKS = ROOT / "tests" / "data" / "demo_benchmarks"


def workflow_rules() -> set[str]:
    return {m.group(1) or m.group(2) for smk in (ROOT / "rules").glob("*.smk")
            for m in re.finditer(r"^(?:rule|checkpoint)\s+(\w+)\s*:|^use rule \w+ as (\w+) with:", smk.read_text(),
                                 re.MULTILINE)}


def measured(rule: str) -> tuple[list[float], list[float]]:
    """max_rss and s of every row of a rule's fixture files, read without the code under test."""
    rss, secs = [], []
    for path in (DEMO_BENCHMARKS / rule).rglob("*.tsv"):
        for row in csv.DictReader(path.open(), delimiter="\t"):
            rss.append(float(row["max_rss"]))
            secs.append(float(row["s"]))
    return rss, secs


def printed(*argv: str, capsys) -> dict:
    assert cli.main(list(argv)) == 0
    return yaml.safe_load(capsys.readouterr().out)["set-resources"]


def test_benchmark_folders_are_rule_names():
    """What sizing relies on: every rule's benchmark: path starts with results/benchmarks/<its own name>/."""
    text = "".join(smk.read_text() for smk in sorted((ROOT / "rules").glob("*.smk")))
    blocks = re.split(r"^(?=(?:rule|checkpoint)\s+\w+\s*:)", text, flags=re.MULTILINE)
    checked = 0
    for block in blocks:
        head = re.match(r"(?:rule|checkpoint)\s+(\w+)\s*:", block)
        path = re.search(r"^\s+benchmark:\s*\n\s+[\"']([^\"']+)", block, re.MULTILINE)
        if head and path:
            assert path.group(1).startswith(f"{sizing.BENCHMARKS}/{head.group(1)}/"), (head.group(1), path.group(1))
            checked += 1
    assert checked >= 8


def test_demo_fixture_names_real_rules():
    sizes = sizing.size_rules(DEMO_BENCHMARKS)
    rules = workflow_rules()
    assert set(sizes) <= rules, set(sizes) - rules
    assert {"tile", "segment", "stitch", "measure", "report_sample", "aggregate_measurements"} <= set(sizes)


@pytest.mark.parametrize("profile", sorted(sizing.PROFILES))
def test_printed_rules_exist(profile, capsys):
    out = printed("size", "--profile", profile, str(DEMO_BENCHMARKS), capsys=capsys)
    assert set(out) and set(out) <= workflow_rules()


def test_sizes_follow_from_the_numbers():
    segment = sizing.size_rules(DEMO_BENCHMARKS)["segment"]
    assert (segment.files, segment.jobs) == (5, 5)
    assert segment.peak_rss_mb == 256.97 and segment.slowest_s == 9.01   # the demo's largest segment job
    for mem_headroom, time_headroom in ((2.0, 3.0), (1.5, 3.0), (10.0, 40.0), (33.3, 100.0)):
        sizes = sizing.size_rules(DEMO_BENCHMARKS, mem_headroom=mem_headroom, time_headroom=time_headroom,
                                  mem_floor_mb=0, time_floor_min=0)
        for rule, size in sizes.items():
            rss, secs = measured(rule)
            assert size.peak_rss_mb == max(rss) and size.slowest_s == max(secs) and size.jobs == len(rss)
            assert size.mem_mb % 500 == 0 and size.mem_mb >= max(rss) * mem_headroom > size.mem_mb - 500, rule
            assert size.runtime == math.ceil(max(secs) * time_headroom / 60), rule
    big = sizing.size_rules(DEMO_BENCHMARKS, mem_headroom=10, time_headroom=40, mem_floor_mb=0, time_floor_min=0)
    assert big["segment"].mem_mb == 3000 and big["segment"].runtime == 7   # 2569.7 MB, 360.4 s


def test_floors():
    slurm = sizing.size_for("slurm", DEMO_BENCHMARKS)
    gke = sizing.size_for("gke", DEMO_BENCHMARKS)
    # the demo is small: every rule peaks under 260 MB and runs under 10 s
    assert {s.mem_mb for s in slurm.values()} == {1000} and {s.runtime for s in slurm.values()} == {10}
    assert {s.mem_mb for s in gke.values()} == {500}


def test_profile_parameters():
    """The two former implementations' parameters: SLURM 2 x RSS (>= 1 GB), 3 x time (>= 10 min); GKE 1.5 x RSS."""
    slurm, gke = sizing.PROFILES["slurm"], sizing.PROFILES["gke"]
    assert (slurm.mem_headroom, slurm.mem_floor_mb, slurm.time_headroom, slurm.time_floor_min) == (2, 1000, 3, 10)
    assert (gke.mem_headroom, gke.mem_floor_mb, gke.step_mb, gke.resources) == (1.5, 500, 500, ("mem_mb",))
    assert sizing.size_rules(DEMO_BENCHMARKS) == sizing.size_for("slurm", DEMO_BENCHMARKS)


def test_both_profiles_print_from_the_same_function(monkeypatch, capsys):
    calls = []
    real = sizing.size_rules

    def recording(folder, **params):
        calls.append(params)
        return real(folder, **params)

    monkeypatch.setattr(sizing, "size_rules", recording)
    folder = str(DEMO_BENCHMARKS)
    out = {"slurm": printed("size", "--profile", "slurm", folder, "--mem-headroom", "10", capsys=capsys),
           "gke": printed("size", "--profile", "gke", folder, "--mem-headroom", "10", capsys=capsys),
           "gke size": printed("gke", "size", folder, "--mem-headroom", "10", capsys=capsys)}
    assert len(calls) == 3
    assert out["gke"] == out["gke size"]                      # `cellscale gke size` = `cellscale size --profile gke`
    sizes = real(DEMO_BENCHMARKS)
    # the block is the profile's whole set-resources (run from the checkout), each measured rule's sized resources
    # replaced and its other keys kept: it replaces the profile's block as it is
    for name in ("slurm", "gke"):
        own = yaml.safe_load((ROOT / "profiles" / name / "config.yaml").read_text())["set-resources"]
        assert set(out[name]) == set(own) | set(sizes), name
        for rule, res in out[name].items():
            sized = {"mem_mb", "runtime"} if name == "slurm" else {"mem_mb"}
            kept = {k: v for k, v in (own.get(rule) or {}).items() if rule not in sizes or k not in sized}
            assert {k: v for k, v in res.items() if k in kept} == kept, (name, rule)
            # sized where the profile sets the resource, or for a rule the profile does not list
            expected = sized if rule not in own else sized & set(own[rule] or {})
            assert rule not in sizes or expected <= set(res), (name, rule)
    assert out["gke"]["segment"]["gpu"] == 1 and out["gke"]["segment"]["machine_type"] == "g2-standard-4"
    assert out["slurm"]["segment"]["mem_mb"] == "3000 * attempt" and out["gke"]["segment"]["mem_mb"] == 3000  # same
    assert out["slurm"]["summary"]["mem_mb"] == "1000 * attempt" and out["gke"]["summary"]["mem_mb"] == 1000  # 917 MB


def test_block_leaves_to_the_rule_what_the_profile_does(capsys):
    """Pasted over the SLURM profile's block, the printed one must not pin what the profile leaves to the rule
    (track's mem_mb, sized from the movie and x attempt: a fixed 1000 MB there would OOM a long movie on every try),
    and a rule new to the block (aggregate_measurements) grows with the attempt as the profile's defaults do."""
    out = printed("size", "--profile", "slurm", str(DEMO_BENCHMARKS), capsys=capsys)
    assert "mem_mb" not in out["track"] and out["track"]["runtime"] == "10 * attempt"
    assert out["aggregate_measurements"] == {"mem_mb": "1000 * attempt", "runtime": "10 * attempt"}
    sizes = sizing.size_rules(DEMO_BENCHMARKS)
    block = yaml.safe_load(sizing.set_resources_block(sizes, "slurm", current={"track": {"runtime": "10 * attempt"}},
                                                      defaults={"mem_mb": "1000 * attempt", "runtime": 10}))
    assert block["set-resources"]["track"] == {"runtime": "10 * attempt"}
    assert block["set-resources"]["summary"] == {"mem_mb": "1000 * attempt", "runtime": 10}
    gke = sizing.size_for("gke", DEMO_BENCHMARKS)   # outside a checkout (no profile): every measured rule sized
    assert yaml.safe_load(sizing.set_resources_block(gke, "gke"))["set-resources"]["track"] == {"mem_mb": 500}


def test_profiles_cover_the_demo():
    """Each profile asks at least for what the demo's jobs used; every rule it sizes exists."""
    import yte

    rules = workflow_rules()
    measured_peak = {rule: s.peak_rss_mb for rule, s in sizing.size_rules(DEMO_BENCHMARKS).items()}
    for name in ("slurm", "gke"):
        with open(ROOT / "profiles" / name / "config.yaml") as f:
            profile = yte.process_yaml(f, require_use_yte=True)
        assert set(profile["set-resources"]) <= rules, name
        for rule, peak in measured_peak.items():
            asked = profile["set-resources"].get(rule, {}).get("mem_mb", profile["default-resources"]["mem_mb"])
            asked = eval(str(asked), {"attempt": 1})  # SLURM: "1000 * attempt"
            assert asked >= peak, (name, rule)


def test_unsampled_and_flat_files(tmp_path):
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    (tmp_path / "quick").mkdir()
    (tmp_path / "quick" / "a.tsv").write_text(header + "0.01\t0:00:00\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\n")
    (tmp_path / "flat.tsv").write_text(header + "130.0\t0:02:10\t1200.5\t1\t1\t1\t0\t0\t50\t5\n")
    sizes = sizing.size_rules(tmp_path)
    assert sizes["quick"].peak_rss_mb == 0 and sizes["quick"].mem_mb == 1000 and sizes["quick"].jobs == 1
    assert sizes["flat"].mem_mb == 2500 and sizes["flat"].runtime == 10     # a file directly in it: its stem
    assert sizing.size_for("gke", tmp_path)["flat"].mem_mb == 2000


def test_missing_or_empty_folder(tmp_path, capsys):
    """As the other commands: one line ``cellscale size: error: FOLDER: ...``, exit status 2."""
    assert cli.main(["size", "--profile", "slurm", str(tmp_path / "absent")]) == 2
    assert capsys.readouterr().err.startswith(f"cellscale size: error: {tmp_path / 'absent'}: no such folder (")
    assert cli.main(["gke", "size", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"cellscale gke: error: {tmp_path}: no benchmark files (run the workflow once "
                                       f"first)\n")


@pytest.mark.parametrize("option", [["--mem-headroom", "-1"], ["--mem-headroom", "0"], ["--mem-headroom", "nan"],
                                    ["--mem-floor", "-500"], ["--time-headroom", "-3"], ["--time-floor", "-1"],
                                    ["--time-floor", "1.5"]])
def test_a_number_out_of_range_is_a_usage_error_naming_the_option(option, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["size", "--profile", "slurm", str(DEMO_BENCHMARKS), *option])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"cellscale size: error: argument {option[0]}: expected " in err and repr(option[1]) in err


def test_default_folder_is_the_workflows(tmp_path, monkeypatch, capsys):
    shutil.copytree(DEMO_BENCHMARKS, tmp_path / "results" / "benchmarks")
    monkeypatch.chdir(tmp_path)
    assert printed("size", "--profile", "gke", capsys=capsys) == \
        printed("size", "--profile", "gke", str(DEMO_BENCHMARKS), capsys=capsys)
