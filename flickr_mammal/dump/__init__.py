"""The offline search stage: scan a YFCC100M-layout metadata dump (``read``), keep the rows that
name a class (``match``, ``rows``) and stage them into the catalog (``search``), resumably."""
