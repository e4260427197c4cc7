"""gridless workers: trainers, models and the Ray worker loop (never imports `master`)."""
