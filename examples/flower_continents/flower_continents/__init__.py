"""A Flower app: FedAvg over Flickr-Mammal with one continent per SuperNode."""
