"""`podmedic logs janitor`: deletes dead pods' log directories after their retention, safely.

plan.py decides (pure), tree.py touches the filesystem (descriptor-relative, never following a
link, never crossing a mount), run.py sequences one run, metrics.py renders its Prometheus text.
"""
