"""Pure domain: model, statistics, schedule arithmetic and the error tree (stdlib only)."""
