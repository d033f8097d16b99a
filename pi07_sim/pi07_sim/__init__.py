"""The embedded simulated robot of pi07: a MuJoCo tabletop with two embodiments, multi-step task families,
scripted experts, ROS 2 sim and expert nodes, and a bag recorder and player that need no rosbag2.
"""
