"""Analytics: what the engagement loop's counts mean, e.g. a holdout's lift with its uncertainty."""
