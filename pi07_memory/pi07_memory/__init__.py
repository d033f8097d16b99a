"""pi07 memory (MEM style): short-term visual memory (recent frames per camera at a stride) and long-term
language memory with revisions per task, persisted to disk; the node memory.
"""
