"""Events the exchange service publishes (`exchange.<entity>.<verb>.v<major>`)."""
