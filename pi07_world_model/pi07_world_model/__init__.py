"""The pi07 world model: a latent flow-matching image generator that produces one subgoal image per camera from
the current images, the subtask and the metadata; its training code; the node world_model.
"""
