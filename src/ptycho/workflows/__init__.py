"""Workflows: training (:mod:`.training`), inference (:mod:`.inference`), output files
(:mod:`.outputs`) and the legacy ptychodus-facing API (:mod:`.components`).

Importing this package imports nothing else; backends load when a workflow runs.
"""
