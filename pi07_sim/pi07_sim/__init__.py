"""pi07_sim: the embedded simulated robot (MuJoCo tabletop, two embodiments, experts, ROS 2 nodes, bags)."""
import os

# Offscreen rendering on CPU (Mesa EGL), single-threaded so it leaves a core for the models. Set before MuJoCo is
# imported anywhere in the package; an explicit setting in the environment wins.
os.environ.setdefault('MUJOCO_GL', 'egl')
os.environ.setdefault('LP_NUM_THREADS', '1')
