"""Bringup of pi07: per-embodiment profiles (config/), launch files (launch/), the embedded runner for machines
without a ROS 2 install, the DDS environment settings, and the demo.
"""
