"""Python client of twd, the Traveling Words daemon.

    from twd_client import Client
    c = Client("http://localhost:8080")
    c.svd(block=11, top=5)                       # a pandas DataFrame
    c.trajectory_vectors("I am the")             # a numpy array (states, tokens, d)

Every table is read from the daemon's CSV with token texts kept as text
("NA", "null" and "nan" are real GPT-2 tokens). Errors raise TwdError.
"""
from .client import ROUTES, Client, TwdError, read_csv

__all__ = ["Client", "TwdError", "read_csv", "ROUTES"]
__version__ = "0.2.0"
