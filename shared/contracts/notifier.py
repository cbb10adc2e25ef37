"""Events the notifier service publishes (`notifier.<entity>.<verb>.v<major>`)."""
