"""Accelerators with a PE array: systolic timing (SCALE-Sim's model) and dataflow loop nests (Eyeriss, MAGNet)."""
