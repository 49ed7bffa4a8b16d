"""aep-flow-exporter: Prometheus metrics for Adobe Experience Platform dataflow runs."""
