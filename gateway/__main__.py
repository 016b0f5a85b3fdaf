"""`python -m gateway`: serve the gateway with uvicorn (same as `soma gateway serve`)."""

from soma.cli_gateway import serve

if __name__ == "__main__":
    serve(host=None, port=None)
