"""ROS-free foundations (imports nothing above it): ids, label sets, the image codec and message
decoding, stamps, geometry, segment measurement, message trees, preprocessing."""
