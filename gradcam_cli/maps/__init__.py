"""Maps and geometry: the model's preprocessing, scaling, placement on the photo, boxes."""
