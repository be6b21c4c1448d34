"""The archive's one query service, behind QIDO-RS and C-FIND alike.

``attributes``: the attributes the index answers on, per level of the information model;
``wildcard``: DICOM wildcards as escaped SQL GLOB/LIKE lookups; ``matching``: one matching
key as a filter (PS3.4 C.2.2.2); ``search``: ``rows_matching``, the one search both doors
call; ``elements``: the index values of result rows as DICOM JSON elements.
"""
