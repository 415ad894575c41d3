"""Film printing: layout, rendering for print, the Print Management SCU session, previews.

Knows nothing of jobs: `appliance.jobs.print_job` wires these pieces into the print queue.
"""
