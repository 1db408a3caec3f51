/*{
    "DESCRIPTION": "Zoom / rotate / swirl warp about the centre. Swirl twists the middle more than the edges. Outside the frame the picture is mirror-tiled, so zooming out never shows smeared edges. zoom 0, rotate 0 and swirl 0 leave the picture unchanged.",
    "CREDIT": "Latent Jockey",
    "ISFVSN": "2",
    "CATEGORIES": ["Distortion", "Geometry"],
    "INPUTS": [
        {"NAME": "inputImage", "TYPE": "image"},
        {"NAME": "zoom", "LABEL": "Zoom (in > 0, 1 = 4x)", "TYPE": "float", "DEFAULT": 0.0, "MIN": -1.0, "MAX": 1.0},
        {"NAME": "rotate", "LABEL": "Rotate (turns)", "TYPE": "float", "DEFAULT": 0.0, "MIN": -1.0, "MAX": 1.0},
        {"NAME": "swirl", "LABEL": "Swirl (turns at the centre)", "TYPE": "float", "DEFAULT": 0.25, "MIN": -1.0, "MAX": 1.0}
    ]
}*/

const float TAU = 6.28318530718;

vec2 mirrorTile(vec2 uv) {
    return 1.0 - abs(1.0 - mod(uv, 2.0));
}

void main() {
    float aspect = RENDERSIZE.x / max(RENDERSIZE.y, 1.0);
    vec2 p = (isf_FragNormCoord - 0.5) * vec2(aspect, 1.0);
    float r = length(p);
    // Swirl falls off smoothly to nothing at 0.7 frame heights from the centre.
    float fall = 1.0 - smoothstep(0.0, 0.7, r);
    float a = -(rotate + swirl * fall * fall) * TAU;
    float c = cos(a), s = sin(a);
    p = mat2(c, s, -s, c) * p;
    p *= exp2(-2.0 * zoom);
    vec2 uv = mirrorTile(p / vec2(aspect, 1.0) + 0.5);
    gl_FragColor = vec4(IMG_NORM_PIXEL(inputImage, uv).rgb, 1.0);
}
