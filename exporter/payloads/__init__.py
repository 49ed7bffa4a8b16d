"""Payloads: decode a delivery body and model each documented Adobe shape."""
