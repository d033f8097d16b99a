"""Data for pi07 models: recorded bags -> a dataset directory (`convert`), torch Datasets for the VLA, the
high-level decoder and the world model, and closed-loop rollouts in the simulator without ROS."""
