"""What an operator sees of genq: metrics (Prometheus), traces (OpenTelemetry) and
the log format (plain or JSON, with each job's context, secrets redacted)."""
