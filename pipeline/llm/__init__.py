"""Language and vision model providers behind TextModel and VisionModel."""
