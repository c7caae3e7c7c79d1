"""The pieces of the invoice extraction example; `main.py` wires them together.

- `documents`: the invoices to read; `schema`: the typed answers (`Invoice`, `Review`).
- `pipeline`: the agents and the map-reduce graph; `run`: one run under a budget.
- `audit`: how each document's samples voted; `output`, `report`: the files and the printout.
- `reader`, `fakes`: the rule-based stand-ins for the models, for offline runs.
"""
