"""Events the retention service publishes (`retention.<entity>.<verb>.v<major>`)."""
