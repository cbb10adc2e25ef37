"""Benchmarks of the IMI platform on this machine's PostgreSQL and RabbitMQ: throughput, latency and
scale, each measured next to a floor taken in the same run (see README.md). Run with
``python -m bench [NAME ...] [--quick]``."""
