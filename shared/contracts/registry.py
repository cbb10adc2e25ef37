"""Events the registry service publishes (`registry.<entity>.<verb>.v<major>`)."""
