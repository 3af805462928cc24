"""Budget table and chart from the JSON results (placeholder)."""
def finish(run_info):
    pass
