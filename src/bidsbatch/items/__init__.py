"""Item sources: what the units of work of a run are, beyond BIDS scans.

An :class:`~bidsbatch.items.base.ItemSource` lists :class:`~bidsbatch.items.base.Item`
values (an id, named input files, fields); :mod:`bidsbatch.items.plan` turns them
into the same specs a BIDS crawl gives, so everything after planning (executors,
worker, markers, retry, cost, report) is shared. One module per source, one line
in :mod:`bidsbatch.items.registry`.
"""
