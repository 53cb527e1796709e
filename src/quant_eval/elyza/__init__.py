"""ELYZA-tasks-100: open-ended Japanese tasks, answered with the chat template and scored by a judge.

Answers are generated in one stage (generation.py) and judged in another (judge.py), so a
judge can be swapped or repeated without generating the answers again.
"""
