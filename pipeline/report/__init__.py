"""Reports from metrics files alone: figures, tables and the written report.

Nothing here imports the model, the attention code or Lightning, so a report can be rebuilt
anywhere from `metrics/*.json` (and is tested with hand-made metrics).
"""
