/*{
    "DESCRIPTION": "Kaleidoscope: the picture is folded into mirrored wedges around the centre (segments = n-fold symmetry, each wedge mirrored). Outside the frame the source is mirror-tiled, so nothing smears at the corners.",
    "CREDIT": "Latent Jockey",
    "ISFVSN": "2",
    "CATEGORIES": ["Geometry", "Stylize"],
    "INPUTS": [
        {"NAME": "inputImage", "TYPE": "image"},
        {"NAME": "segments", "LABEL": "Segments", "TYPE": "float", "DEFAULT": 6.0, "MIN": 1.0, "MAX": 24.0},
        {"NAME": "rotate", "LABEL": "Rotate (turns)", "TYPE": "float", "DEFAULT": 0.0, "MIN": -1.0, "MAX": 1.0},
        {"NAME": "zoom", "LABEL": "Zoom", "TYPE": "float", "DEFAULT": 1.0, "MIN": 0.25, "MAX": 4.0}
    ]
}*/

const float TAU = 6.28318530718;

// Mirror-tile a coordinate: 0..1 as is, 1..2 reflected, and so on.
vec2 mirrorTile(vec2 uv) {
    return 1.0 - abs(1.0 - mod(uv, 2.0));
}

void main() {
    float aspect = RENDERSIZE.x / max(RENDERSIZE.y, 1.0);
    vec2 p = (isf_FragNormCoord - 0.5) * vec2(aspect, 1.0);
    float r = length(p);
    // Whole segments only, so the wedges close seamlessly around the circle.
    float wedge = 3.14159265359 / floor(segments);
    float a = atan(p.y, p.x) - rotate * TAU;
    // Fold: periodic over two wedges, mirrored about each wedge's edges.
    a = abs(mod(a, 2.0 * wedge) - wedge);
    // Sample the wedge that looks out from the centre towards the upper right of the picture.
    vec2 q = vec2(cos(a + rotate * TAU), sin(a + rotate * TAU)) * r / zoom;
    vec2 uv = mirrorTile(q / vec2(aspect, 1.0) + 0.5);
    gl_FragColor = vec4(IMG_NORM_PIXEL(inputImage, uv).rgb, 1.0);
}
