"""ROS 2 nodes of pi07_policy (thin: the logic lives in plain modules beside them)."""
