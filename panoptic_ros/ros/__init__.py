"""The only part of panoptic_ros that imports ``rclpy`` and message packages."""
