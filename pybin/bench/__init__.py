"""``python -m pybin.bench``: measurements of this machine, for the README (see ``report``).

``codec`` — the codec and the endpoint; ``e2e`` — the command line end to end;
``relay`` — ``pybin relay`` forwarding at 50,000/s; ``naive`` — the straightforward
script every end-to-end figure stands beside.
"""
