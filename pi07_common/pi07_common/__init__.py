"""ROS helpers shared by the pi07 nodes: checked image conversion, QoS profiles, diagnostics, lifecycle helpers.

Kept small and free of model code, so that every node package can depend on it (msgs <- common <- the rest).
"""
