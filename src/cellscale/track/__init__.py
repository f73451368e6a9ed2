"""Cell tracking: detections, linking, lineage export."""
