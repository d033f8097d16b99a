"""Bags without rosbag2: rosbag2-format MCAP bags written and read with ``rosbags``, moved over DDS by rclpy."""
