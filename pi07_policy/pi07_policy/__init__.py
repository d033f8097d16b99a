"""The pi07 VLA (vision-language backbone + flow-matching action expert, FAST tokens, Knowledge Insulation, Real-
Time Chunking), the high-level subtask and memory decoder, their data and training code, and the nodes
high_level_policy, action_expert and chunk_executor.
"""
