"""Serving glue: the tritonserver launcher and the replay client."""
