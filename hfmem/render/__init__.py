"""render: turn reports and tables into JSON, a terminal table or Markdown. No arithmetic here beyond
choosing units for display."""
