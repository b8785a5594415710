"""The Winograd kernels (``kernel``) and their straight-line tile transforms (``transforms*.h``).
"""
