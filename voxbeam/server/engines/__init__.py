"""Speech engines and the worker process that hosts them."""
