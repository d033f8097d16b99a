"""Control logic without ROS: executing action chunks by time, within limits (used by the chunk_executor node)."""
