"""aep-flow-exporter: Prometheus metrics for Adobe Experience Platform dataflow runs."""

__version__ = "0.1.0"
