"""The Faust side of frictionwatch: everything that touches Kafka, HTTP or Prometheus."""
