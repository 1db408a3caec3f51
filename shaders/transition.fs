/*{
    "DESCRIPTION": "Transition from a held picture (startImage) to the live one (endImage): crossfade, wipe, luma key or dissolve as progress goes 0 to 1. At progress 1 (the default) it passes the live picture through untouched. In the engine, the held picture is the frame on screen when /lj/trigger/hold (or Renderer.hold) was fired; any ISF host can feed both images.",
    "CREDIT": "Latent Jockey",
    "ISFVSN": "2",
    "CATEGORIES": ["Transition"],
    "INPUTS": [
        {"NAME": "startImage", "TYPE": "image"},
        {"NAME": "endImage", "TYPE": "image"},
        {"NAME": "progress", "LABEL": "Progress", "TYPE": "float", "DEFAULT": 1.0, "MIN": 0.0, "MAX": 1.0},
        {"NAME": "mode", "LABEL": "Mode", "TYPE": "long", "DEFAULT": 0, "VALUES": [0, 1, 2, 3],
         "LABELS": ["Crossfade", "Wipe", "Luma key", "Dissolve"]},
        {"NAME": "angle", "LABEL": "Wipe angle (turns)", "TYPE": "float", "DEFAULT": 0.0, "MIN": 0.0, "MAX": 1.0},
        {"NAME": "softness", "LABEL": "Edge softness", "TYPE": "float", "DEFAULT": 0.1, "MIN": 0.0, "MAX": 1.0}
    ]
}*/

// Every mode turns a per-pixel "order" s in 0..1 into a mix weight: the pixel switches to the
// live picture once progress (stretched so the soft edge fits) has passed s. s is the position
// along the wipe direction, the start picture's luma, or hash noise.

float order_hash(vec2 p) {
    p = fract(p * vec2(0.1031, 0.1030));
    p += dot(p, p.yx + 33.33);
    return fract((p.x + p.y) * p.x);
}

void main() {
    vec2 uv = isf_FragNormCoord;
    vec4 a = IMG_NORM_PIXEL(startImage, uv);
    vec4 b = IMG_NORM_PIXEL(endImage, uv);
    float p = clamp(progress, 0.0, 1.0);
    float w;
    if (mode == 0) {
        w = p;
    } else {
        float s;
        if (mode == 1) {
            float ang = angle * 6.28318530718;
            vec2 d = vec2(cos(ang), sin(ang));
            // 0 at the corner the wipe starts from, 1 at the opposite one
            s = dot(uv - 0.5, d) / (0.5 * (abs(d.x) + abs(d.y))) * 0.5 + 0.5;
        } else if (mode == 2) {
            s = dot(a.rgb, vec3(0.2126, 0.7152, 0.0722));
        } else {
            s = order_hash(floor(uv * RENDERSIZE));
        }
        float soft = max(softness, 1e-4);
        float e = p * (1.0 + soft);
        w = 1.0 - smoothstep(e - soft, e, s);
    }
    gl_FragColor = vec4(mix(a.rgb, b.rgb, w), 1.0);
}
