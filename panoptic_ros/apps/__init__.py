"""Front-ends without ROS: the commands' jobs (infer, bag processing and evaluation, the offline demo,
engine building), on top of the frame engine."""
