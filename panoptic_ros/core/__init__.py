"""ROS-free core: result types, label sets, id conventions and the image codec."""
