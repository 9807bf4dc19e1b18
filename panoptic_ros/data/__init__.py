"""Data: synthetic scenes, dataset formats, rosbag2 I/O (all ROS-free)."""
