"""The report: terminal tables, report.json, report.md, plots and the GitHub job summary."""
