"""The demo's single-file HTML report: series from the recorded events, inline SVG plots, one page."""
